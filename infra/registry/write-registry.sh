#!/bin/sh
# Run by the deployment (infra/modules/registry.bicep: an Azure CLI deployment script, signed
# in as the app's identity, which holds Storage Blob Data Contributor on the work container).
# Writes the dataset registry that PIPELINE_DATASETS names when it does not exist yet, from
# the `datasets` parameter; an existing registry is never replaced (after the first `azd up`
# the document is the registry: docs/deploy.md, "The dataset registry").
set -eu
attempt=0
while :; do
  attempt=$((attempt + 1))
  if exists=$(az storage blob exists --auth-mode login --account-name "$ACCOUNT" \
      --container-name "$CONTAINER" --name "$BLOB" --query exists --output tsv 2>/tmp/exists.err); then
    break
  fi
  if [ "$attempt" -ge 20 ]; then
    echo "Cannot read az://$CONTAINER/$BLOB in $ACCOUNT as the app's identity: $(cat /tmp/exists.err)" >&2
    exit 1
  fi
  # A role assignment can take a few minutes to apply after it is made.
  echo "az://$CONTAINER/$BLOB not readable yet (attempt $attempt), waiting for the role assignment"
  sleep 30
done
if [ "$exists" = "true" ]; then
  result=kept
  echo "az://$CONTAINER/$BLOB exists: kept as it is"
else
  printf '%s' "$REGISTRY" > /tmp/datasets.json
  az storage blob upload --auth-mode login --account-name "$ACCOUNT" --container-name "$CONTAINER" \
    --name "$BLOB" --file /tmp/datasets.json --content-type application/json --overwrite false \
    --only-show-errors
  result=written
  echo "az://$CONTAINER/$BLOB written"
fi
printf '{"result": "%s", "location": "az://%s/%s"}' "$result" "$CONTAINER" "$BLOB" > "$AZ_SCRIPTS_OUTPUT_PATH"
