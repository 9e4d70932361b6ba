"""Data: raw layouts in, manifests out; samplers and datasets that read manifests."""
