//go:build linux && cgo

package main

/*
#include <malloc.h>
static void tandem_malloc_trim(void) { malloc_trim(0); }
*/
import "C"

// trimCHeap hands the memory the Automerge core freed back to the system:
// glibc keeps freed memory in its arenas (one per thread that called into
// the core) until asked.
func trimCHeap() { C.tandem_malloc_trim() }
