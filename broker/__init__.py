"""framecrypt.broker"""
