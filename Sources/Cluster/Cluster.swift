// placeholder: Cluster
