// Package device is the device side of Weft: MQTT clients over mutual TLS
// (eclipse/paho.golang) with device certificates, used by the load
// generator behind `weft bench gateway`, by tests, and by the fleet
// simulator. Credentials loads device certificates from a certificate
// directory, issuing the missing ones when the directory holds the device
// CA key; Dial connects one device; Bench drives many.
package device
