module github.com/wispfn/wisp/sdk/go

go 1.24
