"""What train/, eval/, dagger/ and deploy/ share, below all of them: checkpoints (atomic writes,
top-k, loading), run directories (creation, manifest, unique names), the device choice and
writable-path checks. Nothing here imports a higher package of polx."""
