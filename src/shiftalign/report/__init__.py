"""HTML report of an experiment: the verdict, the tables and the plots (``plots``), on one self-contained page."""
