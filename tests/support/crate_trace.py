"""Following entities of a Workflow Run RO-Crate back through the actions that made them."""

from rocrate.rocrate import ROCrate


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def producers(crate: ROCrate) -> dict:
    """Entity id -> the job action whose result holds it."""
    made = {}
    for action in crate.get_by_type("CreateAction"):
        if action.id == "#run":
            continue
        for entity in as_list(action.get("result")):
            made[entity.id] = action
    return made


def producer(made: dict, entity):
    if entity.id in made:
        return made[entity.id]
    for parent in as_list(entity.get("isPartOf")):
        if parent.id in made:
            return made[parent.id]
    return None


def trace(crate: ROCrate, start: list) -> tuple[set, list, list]:
    """Follow entities back through the actions that produced them: (visited ids, actions, sources)."""
    made = producers(crate)
    visited, actions, sources, queue = set(), [], [], list(start)
    while queue:
        entity = queue.pop()
        if entity.id in visited:
            continue
        visited.add(entity.id)
        action = producer(made, entity)
        if action is None:
            sources.append(entity)
            continue
        if action not in actions:
            actions.append(action)
        queue += [o for o in as_list(action.get("object"))
                  if {"File", "Dataset"} & set(as_list(o.type))]
    return visited, actions, sources
