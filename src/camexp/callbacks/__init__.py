"""Lightning callbacks: CAM pictures and localization metrics."""
