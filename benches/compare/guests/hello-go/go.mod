module fnvm.bench/hello

go 1.21
