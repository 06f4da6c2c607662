"""A small program with an obvious hot spot, for `make demo`.

It builds an inventory, prices it (the slow part: a naive prime sieve used as
a "checksum"), serialises it to JSON and sorts it.  Runs for about three
seconds on one core and prints a one-line result.
"""
import json
import threading


def is_prime(n):
    if n < 2:
        return False
    for d in range(2, int(n ** 0.5) + 1):
        if n % d == 0:
            return False
    return True


def checksum(item_id):
    # deliberately slow: count primes below a few thousand
    return sum(1 for k in range(item_id % 500, item_id % 500 + 2500) if is_prime(k))


def price(item):
    return round(item["weight"] * 1.7 + checksum(item["id"]) / 100, 2)


def build_inventory(n):
    return [{"id": i, "name": "item-%05d" % i, "weight": (i * 37) % 101} for i in range(n)]


def serialise(items):
    return json.dumps(items, sort_keys=True)


def background_logger(stop):
    while not stop.wait(0.05):
        pass


def main():
    stop = threading.Event()
    logger = threading.Thread(target=background_logger, args=(stop,), name="logger")
    logger.start()
    items = build_inventory(1200)
    for item in items:
        item["price"] = price(item)
    text = serialise(items)
    ranked = sorted(items, key=lambda it: (-it["price"], it["name"]))
    stop.set()
    logger.join()
    print("priced %d items, %d bytes of JSON, most expensive: %s"
          % (len(items), len(text), ranked[0]["name"]))


if __name__ == "__main__":
    main()
