"""Review bot for KVM/arm64 patches touching HCR_EL2 and MDCR_EL2 save/restore."""

__version__ = "0.1.0"
