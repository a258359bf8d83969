#!/usr/bin/env python3
"""Keep only the named operations of a vendor's published API description
and the components they refer to (transitively), so that the stand-ins
validate against the vendor's own text without carrying megabytes.

usage: trim.py SOURCE OUT 'METHOD PATH' ...
SOURCE is OpenAPI 3 or Swagger 2, JSON or YAML; OUT is written as YAML.
Run by hand when a description is refreshed; the tests read OUT only.
"""
import json, sys, yaml

src, out, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(src).read()
doc = json.loads(text) if src.endswith('.json') else yaml.safe_load(text)

keep = {}
for op in ops:
    method, path = op.split(' ', 1)
    item = doc['paths'][path]
    k = keep.setdefault(path, {x: v for x, v in item.items() if x in ('parameters', 'summary', 'description')})
    k[method.lower()] = item[method.lower()]

def refs(node, acc):
    if isinstance(node, dict):
        r = node.get('$ref')
        if isinstance(r, str) and r.startswith('#/'):
            acc.add(r)
        for v in node.values():
            refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            refs(v, acc)

def resolve(ref):
    node = doc
    for part in ref[2:].split('/'):
        part = part.replace('~1', '/').replace('~0', '~')
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node

seen, todo = set(), set()
refs(keep, todo)
while todo:
    r = todo.pop()
    top = '/'.join(r.split('/')[:4])  # #/components/<kind>/<name>: kept whole
    if top in seen:
        continue
    seen.add(top)
    refs(resolve(top), todo)

new = {k: doc[k] for k in ('openapi', 'swagger', 'info', 'servers', 'host', 'basePath', 'schemes', 'security', 'securityDefinitions') if k in doc}
new['paths'] = keep
for r in sorted(seen):
    parts = r[2:].split('/')
    src_node, dst = doc, new
    for p in parts[:-1]:
        src_node = src_node[p]
        dst = dst.setdefault(p, {})
    dst[parts[-1]] = src_node[parts[-1]]
if 'components' in doc and 'securitySchemes' in doc['components']:
    new.setdefault('components', {})['securitySchemes'] = doc['components']['securitySchemes']
with open(out, 'w') as f:
    f.write('# Trimmed from %s by trim.py: only the operations the stand-ins serve.\n' % src.split('/')[-1])
    yaml.safe_dump(new, f, sort_keys=False, allow_unicode=True, width=1000)
