"""A devpi-server plugin, loaded by the embedded devpi (and its replica) through this
package's `devpi_server` entry point: `GET /<user>/<index>/+basefactory/wheels` answers in
one request what the catalog reads of an index's wheels: every release file of the index
itself, with the test records attached to it.

Read file by file, devpi's JSON API costs one request per project and one per record:
5,500 requests for 5,000 wheels, ~20 s of devpi's one Python process. Here it is one
request per index, read inside devpi's read transaction (so one consistent serial).

Read-only and public like the index's own JSON pages. An external devpi without the plugin
answers 404, and the catalog reads file by file (`DevpiClient.index_wheels`). This module
runs inside devpi-server: it imports devpi's modules and nothing of basefactory.
"""

from __future__ import annotations

import json
from typing import Any

from devpi_server.views import url_for_entrypath
from pluggy import HookimplMarker
from pyramid.response import Response

hookimpl = HookimplMarker("devpiserver")

ROUTE = "basefactory-wheels"
PATH = "+basefactory/wheels"


@hookimpl
def devpiserver_pyramid_configure(config: Any, pyramid_config: Any) -> None:
    # devpi adds its own routes after this hook; theirs never match a "+" segment here
    pyramid_config.add_route(ROUTE, "/{user:[^+/]+}/{index:[^+/]+}/" + PATH)
    pyramid_config.add_view(wheels, route_name=ROUTE, request_method="GET")


def wheels(request: Any) -> Response:
    xom = request.registry["xom"]
    stage = xom.model.getstage(request.matchdict["user"], request.matchdict["index"])
    if stage is None:
        return _json(404, {"message": "no such index"})
    files = []
    for project in sorted(stage.list_projects_perstage()):
        for version in sorted(stage.list_versions_perstage(project)):
            name = (stage.get_versiondata_perstage(project, version) or {}).get("name", project)
            links = stage.get_linkstore_perstage(project, version)
            for link in links.get_links(rel="releasefile"):
                records = []
                for result in links.get_links(rel="toxresult", for_entrypath=link):
                    with result.entry.file_open_read() as fh:
                        record = fh.read().decode("utf-8", errors="replace")
                    records.append({"href": url_for_entrypath(request, result.entrypath),
                                    "record": record})
                files.append({"project": name, "version": version,
                              "href": url_for_entrypath(request, link.entrypath),
                              "sha256": link.hashes.get("sha256", ""),
                              "toxresults": records})
    return _json(200, {"result": {"files": files}})


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), status=status, content_type="application/json")
