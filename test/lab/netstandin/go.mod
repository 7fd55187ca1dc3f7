module zerotouch.local/lab/netstandin

go 1.22
