// Builds hashicorp/http-echo from source: the echo-server plugins' default image
// (hashicorp/http-echo:1.0), pushed to the real node's registry (hack/node.sh).
module mlmodel.dev/hack/tools/http-echo

go 1.24.0

require github.com/hashicorp/http-echo v1.0.0
