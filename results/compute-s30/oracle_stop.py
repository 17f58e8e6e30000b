"""The best any stopping rule could do over a mixture's replies: per problem,
the weighted-vote answer of each prefix (1..8 replies) and its tokens; an
oracle that knows the reference stops at the cheapest right prefix, and
spends a token budget on the problems cheapest to get right first."""
import sys

from variants import mixtures, wwinner

def winner_right(kept):
    w = wwinner(kept)
    return w is not None and w['correct'] is True

sc8_tokens = float(sys.argv[3])
items = mixtures(sys.argv[1], sys.argv[2])
costs = []
for m in items:
    cheapest = None
    for k in range(1, len(m) + 1):
        if winner_right(m[:k]):
            cheapest = sum(s['tokens'] for s in m[:k])
            break
    costs.append(cheapest)
n = len(items)
reachable = sorted(c for c in costs if c is not None)
print(f'{n} problems; some prefix of the mixture is right on {len(reachable)}')
for share in (0.25, 0.35, 0.5, 0.61):
    budget = share * sc8_tokens * n
    spent = right = 0
    for c in reachable:
        if spent + c > budget: break
        spent += c; right += 1
    print(f'budget {share:.0%} of SC@8 ({share*sc8_tokens:.0f} tokens/problem): at most {right} right')
