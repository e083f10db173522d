// Package sdk holds the built player SDK for ingest to serve: dist/ is built
// from src/ by `npm run build` and committed, so building ingest needs no
// Node (CI rebuilds it and fails when the committed files differ).
package sdk

import _ "embed"

// IIFE is dist/viewpulse.js: the SDK as a classic script defining
// window.ViewPulse.
//
//go:embed dist/viewpulse.js
var IIFE []byte

// ESM is dist/viewpulse.mjs: the SDK as an ES module exporting watch.
//
//go:embed dist/viewpulse.mjs
var ESM []byte
