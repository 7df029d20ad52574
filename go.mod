module github.com/vouch-dev/vouch

go 1.26.8
