// Package web holds gpuflow's web dashboard, built: dist/ is what
// `npm run build` makes from src/ (Vue 3, TypeScript, Vite), committed so
// that building and testing the Go program needs no Node.js. The API
// serves it under /ui/ (api.Config.UI); `make test` fails when dist/ is not
// what its sources build to (scripts/check-dist.sh).
package web

import (
	"embed"
	"io/fs"
)

// dist is the built dashboard; "all:" keeps chunks whose names start with
// an underscore.
//
//go:embed all:dist
var dist embed.FS

// Dist returns the built dashboard: index.html and assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: cannot happen
	}
	return sub
}
