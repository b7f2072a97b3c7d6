//go:build !unix

package main

import "os"

// maxRSSKiB is unknown here.
func maxRSSKiB(*os.ProcessState) int64 { return 0 }
