#!/usr/bin/env bash
# Regenerates the DEVELOPMENT-ONLY certificates shipped in certs/.
# Never use these in production: the private keys are public in this repository.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=Postern Development CA (do not trust in production)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout dev-ca-key.pem -out dev-ca.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout dev-key.pem -out dev.csr
openssl x509 -req -in dev.csr -CA dev-ca.pem -CAkey dev-ca-key.pem -CAcreateserial -days 3650 \
  -extfile <(printf "subjectAltName=DNS:localhost,DNS:api.localhost,DNS:metrics.localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth") \
  -out dev-leaf.pem
cat dev-leaf.pem dev-ca.pem > dev-fullchain.pem
rm -f dev.csr dev-leaf.pem dev-ca.srl
chmod 600 dev-key.pem dev-ca-key.pem
# The signing key of `postern demo`'s development token issuer (RS256).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dev-token-key.pem
chmod 600 dev-token-key.pem
# Client certificates for examples/keycloak-mtls.toml: a clients CA (its
# `client_ca`) and one client, CN=ops-admin,O=Example (curl --cert/--key).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=Postern Development Clients CA (do not trust in production)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout dev-clients-ca-key.pem -out dev-clients-ca.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/O=Example/CN=ops-admin" -keyout dev-client-key.pem -out dev-client.csr
openssl x509 -req -in dev-client.csr -CA dev-clients-ca.pem -CAkey dev-clients-ca-key.pem -CAcreateserial -days 3650 \
  -extfile <(printf "subjectAltName=email:ops-admin@example.com\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth") \
  -out dev-client.pem
rm -f dev-client.csr dev-clients-ca.srl
chmod 600 dev-client-key.pem dev-clients-ca-key.pem
