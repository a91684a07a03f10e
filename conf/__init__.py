"""framecrypt.conf"""
