"""framecrypt.transports"""
