"""Model families, one per module, each registering the parts it needs: mixture priors
(VampPrior), hierarchies (HVAE), ladder, flows (IAF, planar), VQ-VAE, beta-TC-VAE, MMD (InfoVAE, WAE)."""
