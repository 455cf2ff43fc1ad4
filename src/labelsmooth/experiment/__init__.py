"""The experiment harness (optional extra ``labelsmooth[harness]``): data sets, models, training runs,
the experiment store, sweeps, statistics and reports. The core library never imports this package."""
