"""careloop's FHIR edge as an independent R4 client sees it.

Usage: check.py BASE HOSPITAL_TOKEN COORDINATOR_TOKEN FIXTURES_DIR

Connects with SMART's `fhirclient` (reads the CapabilityStatement), refers a person
with the SDOH Clinical Care IG's own example Patient, ServiceRequest and Consent in a
transaction, then reads back every kind of resource careloop serves (the transaction
response, ServiceRequest, Patient, Consent, Task read/vread/_history, Task and
ServiceRequest searches, an OperationOutcome) and parses each with fhirclient's R4
models in strict mode: an element of the wrong type, a missing required element or an
unknown element fails. The IG's examples round-trip: what careloop answers names the
same identifier, name, dates and status. Prints a JSON summary; exits non-zero on the
first failure.
"""

import json
import os
import sys
import time

import requests
from fhirclient import client
from fhirclient.models import (
    bundle,
    parameters,
    subscription,
    capabilitystatement,
    consent,
    operationoutcome,
    patient,
    servicerequest,
    task,
)

MODELS = {
    "Bundle": bundle.Bundle,
    "CapabilityStatement": capabilitystatement.CapabilityStatement,
    "Consent": consent.Consent,
    "OperationOutcome": operationoutcome.OperationOutcome,
    "Patient": patient.Patient,
    "ServiceRequest": servicerequest.ServiceRequest,
    "Task": task.Task,
    "Parameters": parameters.Parameters,
    "Subscription": subscription.Subscription,
}

checked = []


def validate(resource, expect=None):
    """Parses `resource` with its R4 model (strict); returns the model."""
    kind = resource.get("resourceType")
    if expect and kind != expect:
        raise AssertionError(f"expected a {expect}, got {kind}: {json.dumps(resource)[:400]}")
    model = MODELS[kind](resource, strict=True)
    checked.append(kind if kind != "Bundle" else f"Bundle/{resource.get('type')}")
    return model


def until(read, ok, what, seconds=15):
    """Reads until `ok(value)`, polling with a deadline; fails naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {value.as_json()}")
        time.sleep(0.05)


def main():
    base, hospital, coordinator, fixtures = sys.argv[1:5]
    fhir = f"{base}/fhir"

    # SMART's client reads and parses the CapabilityStatement itself.
    smart = client.FHIRClient(settings={"app_id": "careloop-check", "api_base": fhir})
    smart.prepare()
    meta = smart.server.capabilityStatement
    assert meta is not None and meta.fhirVersion == "4.0.1", "no CapabilityStatement"
    validate(meta.as_json(), "CapabilityStatement")

    def get(path, token, status=200):
        r = requests.get(f"{fhir}/{path}", headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/fhir+json"})
        assert r.status_code == status, f"GET {path}: {r.status_code} {r.text[:400]}"
        return r.json()

    def load(name):
        with open(os.path.join(fixtures, name)) as f:
            return json.load(f)

    ig_patient = load("Patient-pat-53234.json")
    ig_sr = load("ServiceRequest-SDOHCC-ServiceRequestActiveFoodPantryApplicationAssistExample.json")
    ig_consent = load("Consent-SDOHCC-ConsentInformationDisclosureExample.json")
    for name in sorted(os.listdir(fixtures)):
        if name.endswith(".json"):
            validate(load(name))  # the IG's own examples are valid R4 as given
    discharged = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
    ig_sr["occurrenceDateTime"] = discharged
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Patient/pat-53234", "resource": ig_patient,
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:sr-1", "resource": ig_sr,
         "request": {"method": "POST", "url": "ServiceRequest"}},
        {"fullUrl": "urn:uuid:consent-1", "resource": ig_consent,
         "request": {"method": "POST", "url": "Consent"}},
    ]}
    validate(tx, "Bundle")
    r = requests.post(fhir, data=json.dumps(tx), headers={
        "Authorization": f"Bearer {hospital}", "Content-Type": "application/fhir+json"})
    assert r.status_code == 200, f"transaction: {r.status_code} {r.text[:400]}"
    answer = validate(r.json(), "Bundle")
    assert answer.type == "transaction-response" and len(answer.entry) == 3, r.text[:400]
    assert all(e.fullUrl.startswith("http") for e in answer.entry), "fullUrls are absolute"
    person = answer.entry[0].response.location.split("/")[1]
    referral = answer.entry[1].response.location.split("/")[1]

    # Round trip: what careloop answers is what the IG's examples said.
    p = validate(get(f"Patient/{person}", coordinator), "Patient")
    assert p.identifier[0].value == ig_patient["identifier"][0]["value"], p.as_json()
    assert p.name[0].family in {n["family"] for n in ig_patient["name"]}, p.as_json()
    sr = validate(get(f"ServiceRequest/{referral}", hospital), "ServiceRequest")
    assert sr.subject.reference == f"Patient/{person}" and sr.status == "active", sr.as_json()
    assert sr.occurrenceDateTime.isostring.startswith(discharged[:16]), sr.as_json()
    c = validate(get(f"Consent/{person}", hospital), "Consent")
    assert c.status == ig_consent["status"], c.as_json()

    # The Task, its versions and the searches.
    t = until(
        lambda: validate(get(f"Task/{referral}", hospital), "Task"),
        lambda t: t.businessStatus.text != "requested",
        "the Task past requested",
    )
    ig_task = load("Task-SDOHCC-TaskReferralManagementOrderFulfillmentAcceptedExample.json")
    assert t.meta.profile == ig_task["meta"]["profile"], t.as_json()
    assert (t.intent, t.code.coding[0].code) == (ig_task["intent"], "fulfill"), t.as_json()
    assert t.focus.reference == f"ServiceRequest/{referral}", t.as_json()
    validate(get(f"Task/{referral}/_history/1", hospital), "Task")
    history = validate(get(f"Task/{referral}/_history", hospital), "Bundle")
    assert history.type == "history" and int(history.entry[-1].resource.meta.versionId) == 1
    # Searches read a read model a moment behind the events a read renders.
    until(
        lambda: validate(get(f"Task?patient=Patient/{person}&_total=accurate", hospital), "Bundle"),
        lambda b: b.total is not None and b.total >= 1,
        "the Task in the search",
    )
    validate(get(f"ServiceRequest?patient=Patient/{person}", hospital), "Bundle")
    # A subscription to the Task topic (Backport IG), read back, and its $status.
    backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
    topic = next(e["valueCanonical"] for r in meta.as_json()["rest"][0]["resource"]
                 if r["type"] == "Subscription" for e in r.get("extension", []))
    sub = {"resourceType": "Subscription", "status": "requested", "reason": "closed loop",
           "criteria": topic,
           "_criteria": {"extension": [{"url": f"{backport}/backport-filter-criteria",
                                        "valueString": "Task?status=completed"}]},
           "channel": {"type": "rest-hook", "endpoint": "https://1.1.1.1/notify",
                       "payload": "application/fhir+json",
                       "_payload": {"extension": [{"url": f"{backport}/backport-payload-content",
                                                   "valueCode": "id-only"}]}}}
    validate(sub, "Subscription")
    r = requests.post(f"{fhir}/Subscription", data=json.dumps(sub), headers={
        "Authorization": f"Bearer {hospital}", "Content-Type": "application/fhir+json"})
    assert r.status_code == 201, f"Subscription: {r.status_code} {r.text[:400]}"
    created = validate(r.json(), "Subscription")
    validate(get(f"Subscription/{created.id}", hospital), "Subscription")
    status = validate(get(f"Subscription/{created.id}/$status", hospital), "Bundle")
    assert status.entry[0].resource.resource_type == "Parameters", status.as_json()
    validate(get("Task/no-such-task", hospital, status=404), "OperationOutcome")
    validate(get("Task?subject=Patient/x", hospital, status=400), "OperationOutcome")
    print(json.dumps({"validated": checked}))


if __name__ == "__main__":
    main()
