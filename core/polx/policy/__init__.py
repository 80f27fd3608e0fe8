"""A policy: observation encoder + head + objective + normalizer, and its chunked runtime."""
