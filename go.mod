module github.com/podfim/podfim

go 1.26
