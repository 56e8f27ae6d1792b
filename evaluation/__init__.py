"""The paper's measurements, heatmap pictures and an inference command."""
