"""Cross-modal flows composed from deployment handles, and the HTTP gateway that serves them."""
