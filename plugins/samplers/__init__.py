"""Samplers fitted after training (issue 29): priors fitted to a trained run's codes, chosen when
sampling (`zoo sample RUN --sampler NAME`, `Run.sample(sampler=NAME)`; zoo.evaluation.samplers
selects, fits and caches them). `gmm_fitted` is registered beside the RAE's `fitted_gmm` in
vae_zoo_plugins.families.regularised; this package holds the fitted flow, the second-stage VAE
and the autoregressive prior over a VQ-VAE's codes."""
