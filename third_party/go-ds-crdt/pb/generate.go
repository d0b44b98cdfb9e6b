// Package pb contains generated protobuf types
//
//go:generate protoc -I=. --go_out=. delta.proto bcast.proto
package pb
