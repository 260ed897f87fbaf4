from bireco.utils.iterate import batched


def test_batched_keeps_order_and_a_short_tail() -> None:
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batched([], 3)) == []


def test_batched_reads_a_stream_lazily() -> None:
    seen: list[int] = []

    def stream():
        for i in range(10):
            seen.append(i)
            yield i

    first = next(batched(stream(), 3))
    assert first == [0, 1, 2] and seen == [0, 1, 2]
