module github.com/vouch-dev/vouch

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	golang.org/x/mod v0.42.0 // indirect
)
