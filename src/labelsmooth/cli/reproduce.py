"""``labelsmooth reproduce``: placeholder replaced below."""
