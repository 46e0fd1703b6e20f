//go:build !(linux && cgo)

package main

// trimCHeap does nothing where the C allocator is not glibc's.
func trimCHeap() {}
