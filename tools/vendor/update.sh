#!/bin/sh
# Copies the browser libraries pinned in package-lock.json here into api/static/vendor/.
# To move to a new version: `npm install --ignore-scripts markdown-it@X.Y.Z` (or dompurify),
# run this script, and run the browser tests (tests/browser/test_chat_page.py).
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
out=../../api/static/vendor
rm -rf "$out"
mkdir -p "$out/markdown-it" "$out/dompurify"

# markdown-it's browser build bundles its dependencies: their licences go with it.
cp node_modules/markdown-it/dist/browser/markdown-it.umd.min.js "$out/markdown-it/"
cp node_modules/markdown-it/LICENSE "$out/markdown-it/LICENSE"
cp node_modules/entities/LICENSE "$out/markdown-it/LICENSE.entities"
cp node_modules/linkify-it/LICENSE "$out/markdown-it/LICENSE.linkify-it"
cp node_modules/mdurl/LICENSE "$out/markdown-it/LICENSE.mdurl"
cp node_modules/punycode.js/LICENSE-MIT.txt "$out/markdown-it/LICENSE.punycode"
cp node_modules/uc.micro/LICENSE.txt "$out/markdown-it/LICENSE.uc.micro"

cp node_modules/dompurify/dist/purify.min.js "$out/dompurify/"
cp node_modules/dompurify/LICENSE "$out/dompurify/LICENSE"

node -e 'for (const name of ["markdown-it", "dompurify"]) console.log(name, require("./node_modules/" + name + "/package.json").version)' > "$out/VERSIONS"
cat "$out/VERSIONS"
