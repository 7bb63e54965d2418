#!/bin/sh
# make-ca.sh DIR: a throwaway certificate authority and a server certificate
# for 127.0.0.1 and localhost, for fakebot's TLS mode in tests. Writes
# DIR/ca.pem (trust this), DIR/server.pem and DIR/server.key (give these to
# fakebot --tls-cert/--tls-key). Needs the openssl command line tool.
set -eu
dir=${1:?usage: make-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 \
	-subj "/CN=fakebot test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=127.0.0.1" \
	-keyout server.key -out server.csr 2>/dev/null
cat > server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-days 2 -sha256 -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl ca.key
chmod 600 server.key
