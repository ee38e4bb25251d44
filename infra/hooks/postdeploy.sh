#!/bin/sh
# azd postdeploy hook: once blob_created is deployed, provision again with the Event Grid
# subscription (Event Grid refuses a subscription whose function does not exist yet, and
# azd provisions before it deploys). azd exports the environment's values to this script.
set -eu
if [ "${EVENT_SUBSCRIPTION_ENABLED:-false}" = "true" ]; then
  echo "Event Grid subscription: already provisioned"
  exit 0
fi
echo "Event Grid subscription: blob_created is deployed now; provisioning the subscription"
azd env set EVENT_SUBSCRIPTION_ENABLED true
azd provision --no-prompt
