// placeholder replaced by the first kernels
