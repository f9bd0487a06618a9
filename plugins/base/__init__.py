"""The plain VAE's and CVAE's components, one kind per module: networks (mlp, conv),
priors, likelihoods, conditions."""
