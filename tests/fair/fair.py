"""Independent checks of crossdex's catalogue with the tools archive centres and
harvesters use: Sickle (an OAI-PMH harvester), lxml against DataCite's official XSD,
the Library of Congress's bagit library, and pyarrow.

Each subcommand prints one JSON object on stdout for the Rust test to compare with
its own oracle (the simulators' ground truth), and exits non-zero on a failed check.

  fair.py harvest BASE [--from T] [--set S]     every record, oai_dc and oai_datacite
  fair.py errors BASE                           the protocol's error codes
  fair.py datacite XSD FILE...                  validate DataCite XML files
  fair.py bags DIR...                           validate bags, read their tables
"""

import csv
import io
import json
import sys
import urllib.parse
import urllib.request

from lxml import etree

OAI = "{http://www.openarchives.org/OAI/2.0/}"
DATACITE = "{http://datacite.org/schema/kernel-4}"


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def harvest(base, args):
    from sickle import Sickle

    xsd = None
    if "--xsd" in args:
        xsd = etree.XMLSchema(etree.parse(args[args.index("--xsd") + 1]))
    params = {}
    if "--from" in args:
        params["from"] = args[args.index("--from") + 1]
    if "--set" in args:
        params["set"] = args[args.index("--set") + 1]
    sickle = Sickle(base, max_retries=0)
    out = {"identify": {}, "sets": [], "oai_dc": {}, "oai_datacite": {}, "pages": 0}
    identify = sickle.Identify()
    out["identify"] = {
        "protocolVersion": identify.protocolVersion,
        "deletedRecord": identify.deletedRecord,
        "granularity": identify.granularity,
    }
    out["sets"] = sorted(s.setSpec for s in sickle.ListSets())
    for prefix in ["oai_dc", "oai_datacite"]:
        try:
            records = sickle.ListRecords(metadataPrefix=prefix, ignore_deleted=False, **params)
            for record in records:
                ident = record.header.identifier
                if ident in out[prefix]:
                    fail(f"{ident} harvested twice in {prefix}")
                entry = {"deleted": record.header.deleted, "datestamp": record.header.datestamp}
                if not record.header.deleted:
                    if prefix == "oai_dc":
                        entry["title"] = record.metadata.get("title", [None])[0]
                    else:
                        resource = record.xml.find(f".//{DATACITE}resource")
                        if resource is None:
                            fail(f"{ident}: no DataCite resource in oai_datacite")
                        if xsd is not None:
                            doc = etree.ElementTree(etree.fromstring(etree.tostring(resource)))
                            if not xsd.validate(doc):
                                fail(f"{ident}: DataCite XML invalid: {xsd.error_log}")
                        entry["title"] = resource.findtext(f"{DATACITE}titles/{DATACITE}title")
                out[prefix][ident] = entry
        except Exception as e:  # noqa: BLE001 - an empty list is the protocol's error
            if type(e).__name__ != "NoRecordsMatch":
                raise
    # The pages themselves, counted from the raw answers.
    pages = 0
    token = None
    while True:
        q = {"verb": "ListIdentifiers"}
        if token:
            q["resumptionToken"] = token
        else:
            q.update({"metadataPrefix": "oai_dc", **params})
        root = get(base, q)
        if root.find(f"{OAI}error") is not None:
            break
        pages += 1
        t = root.find(f".//{OAI}resumptionToken")
        token = t.text if t is not None and t.text else None
        if not token:
            break
    out["pages"] = pages
    print(json.dumps(out))


def get(base, params):
    url = base + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url) as r:
        if r.status != 200:
            fail(f"{url}: HTTP {r.status}")
        if not r.headers.get("Content-Type", "").startswith("text/xml"):
            fail(f"{url}: content type {r.headers.get('Content-Type')}")
        return etree.fromstring(r.read())


def errors(base, args):
    cases = {
        "no verb": {},
        "unknown verb": {"verb": "Harvest"},
        "missing prefix": {"verb": "ListRecords"},
        "unknown argument": {"verb": "Identify", "colour": "blue"},
        "bad date": {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "yesterday"},
        "mixed granularity": {
            "verb": "ListRecords",
            "metadataPrefix": "oai_dc",
            "from": "2020-01-01",
            "until": "2030-01-01T00:00:00Z",
        },
        "from after until": {
            "verb": "ListIdentifiers",
            "metadataPrefix": "oai_dc",
            "from": "2030-01-01",
            "until": "2020-01-01",
        },
        "unknown format": {"verb": "ListRecords", "metadataPrefix": "marc21"},
        "unknown record": {
            "verb": "GetRecord",
            "identifier": "oai:crossdex.invalid:nope:project:1",
            "metadataPrefix": "oai_dc",
        },
        "forged token": {"verb": "ListRecords", "resumptionToken": "not-a-token"},
        "token with other arguments": {
            "verb": "ListRecords",
            "resumptionToken": "x",
            "metadataPrefix": "oai_dc",
        },
        "empty set": {"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "source:nowhere"},
        "sets in pages": {"verb": "ListSets", "resumptionToken": "x"},
    }
    out = {}
    for name, params in cases.items():
        root = get(base, params)
        error = root.find(f"{OAI}error")
        out[name] = error.get("code") if error is not None else None
        request = root.find(f"{OAI}request")
        # badVerb and badArgument answers echo no arguments.
        if out[name] in ("badVerb", "badArgument") and request.attrib:
            fail(f"{name}: a {out[name]} answer echoes {dict(request.attrib)}")
    print(json.dumps(out))


def datacite(xsd_path, files):
    xsd = etree.XMLSchema(etree.parse(xsd_path))
    titles = {}
    for f in files:
        doc = etree.parse(f)
        if not xsd.validate(doc):
            fail(f"{f}: invalid DataCite XML: {xsd.error_log}")
        titles[f] = doc.findtext(f"{DATACITE}titles/{DATACITE}title")
    print(json.dumps(titles))


def bags(dirs):
    import bagit
    import pyarrow.parquet as pq

    out = []
    for d in dirs:
        bag = bagit.Bag(d)
        bag.validate()  # raises BagValidationError with every problem
        part = {"path": d, "info": dict(bag.info), "tables": {}}
        for table in ["records", "observations", "subject_links"]:
            raw = open(f"{d}/data/tables/{table}.csv", "rb").read()
            text = raw.decode("utf-8")  # strict: raises on anything not UTF-8
            rows = list(csv.reader(io.StringIO(text)))
            header, body = rows[0], rows[1:]
            parquet = pq.read_table(f"{d}/data/tables/{table}.parquet")
            if parquet.num_rows != len(body):
                fail(f"{d} {table}: {len(body)} CSV rows, {parquet.num_rows} Parquet rows")
            if parquet.column_names != header:
                fail(f"{d} {table}: CSV header {header} vs Parquet {parquet.column_names}")
            part["tables"][table] = {"header": header, "rows": len(body)}
            if table == "observations":
                i = header.index("variable")
                part["variables"] = sorted({r[i] for r in body})
            if table == "records":
                part["ids"] = [r[header.index("id")] for r in body]
        out.append(part)
    print(json.dumps(out))


def main():
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "harvest":
        harvest(rest[0], rest[1:])
    elif command == "errors":
        errors(rest[0], rest[1:])
    elif command == "datacite":
        datacite(rest[0], rest[1:])
    elif command == "bags":
        bags(rest)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main()
