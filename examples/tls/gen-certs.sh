#!/usr/bin/env bash
# Makes the example's throwaway PKI in certs/: a CA, a server certificate
# for example.test (+ localhost, 127.0.0.1), a wildcard one for
# *.api.example.test, and a client certificate; ECDSA P-256, 20 years.
# The committed files were made by this script. They are public: never use
# them for anything but trying the example.
set -euo pipefail
cd "$(dirname "$0")/certs"
days=7300
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ec ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days $days -subj "/CN=Portway example CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() {  # name subject sans [extended key usage]
  ec "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "${4:-serverAuth}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days $days -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf example "/CN=example.test" "DNS:example.test,DNS:localhost,IP:127.0.0.1"
leaf api "/CN=api.example.test" "DNS:*.api.example.test"
leaf client "/CN=example client" "DNS:client.example.test" clientAuth
rm -f ca.srl
echo "certs/: ca.pem example.pem api.pem client.pem (+ keys)"
