module github.com/linkbatch/linkbatch

go 1.26.8

require (
	github.com/gocarina/gocsv v0.0.0-20240520201108-78e41c74b4b1
	go.uber.org/zap v1.28.0
	golang.org/x/oauth2 v0.37.0
	golang.org/x/time v0.16.0
)

require go.uber.org/multierr v1.10.0 // indirect
