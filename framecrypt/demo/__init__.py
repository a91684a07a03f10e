"""``framecrypt demo``: an end-to-end encrypted room of Python participants through an
untrusted relay process (see :mod:`framecrypt.demo.room`)."""
