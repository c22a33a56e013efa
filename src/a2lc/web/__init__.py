"""The annotation web app (optional extra ``a2lc[web]``): see :mod:`a2lc.web.app`."""
