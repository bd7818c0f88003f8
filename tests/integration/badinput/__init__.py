"""The bad-input matrix: broken suite files and sources, and the message each must produce."""
