"""Operations over the store that need the channel kinds: what the edges (api/, web/,
the worker) call."""
