// Package verdict decides whether an output may be trusted: it counts the
// claims that the builders a node chose have logged for one (kind, subject)
// and applies the node's quorum rule. This comment is the specification of
// that rule; the code in rules.go follows it line by line.
//
// # Inputs
//
// A Policy lists builders (Member: name, operator, weight, key id) and a
// quorum: Min (agreeing weight), MinOperators (distinct operators among the
// agreeing builders) and OnConflict ("majority" or "refuse"). NewPolicy
// builds one from a validated config.Config.
//
// The entries are every claim the follower's index holds for the subject,
// from every followed log (Source.Claims), and a predicate telling which logs
// were marked compromised (Source.Compromised).
//
// # Who counts
//
//  1. A builder is its key, not its name. Members are sorted by name; when
//     several members carry the same key id, the one whose name sorts first
//     is the builder and the others are its aliases: their claims are that
//     builder's claims, their weights and operators are ignored. One key
//     listed twice therefore counts once, whatever the order of the list.
//     (config.Validate refuses such a policy; this rule keeps a Policy safe
//     when it is built in code.) A member without a key id is identified by
//     its name. A name listed twice keeps the member whose key id sorts first.
//  2. Entries from a log whose name is not a member count for nothing, however
//     many there are: trust is explicit, not a head count. So do members
//     with a weight below 1.
//  3. A builder whose log (under its name or an alias) is compromised counts
//     for nothing and is listed in Compromised. So does a builder that logged
//     two different outputs for this subject: a log must never do that, and
//     it would otherwise vote on both sides.
//  4. A builder's repeated identical claims are one vote (the lowest log
//     index is used).
//
// # The rule
//
// Claims are grouped by output (claim.Output; two claims about different
// subjects never agree). The weight of an output is the sum of the weights
// of the distinct counted builders that claimed it; its operators are the
// distinct operators among them. The leading output is the one with the
// greatest weight; equal weights are broken by the smaller output string, so
// the result never depends on the order of the entries or of a map.
//
// Let T be the total weight of the configured builders (after rule 1), the
// denominator of every fraction here: the builders that did not answer, are
// compromised or disagree are all in T. The outcome is
//
//   - Trusted, with the leading output's claim as Value, when
//     weight(leading) >= Min, and operators(leading) >= MinOperators, and
//     either no other output was claimed, or OnConflict is "majority" and
//     2*weight(leading) > T (a strict majority of the configured weight);
//   - otherwise Conflict when two or more outputs were claimed;
//   - otherwise Insufficient (one output short of the quorum, or none at all).
//
// Min and MinOperators below 1 are taken as 1, so that no claim at all can
// never be "agreement"; an OnConflict other than "majority" means "refuse".
// Because the denominator is T, one answering log of N is 1/N, never 100 %,
// and because the rule compares integers (weights, and 2*w > T instead of
// w/T > 50 %), 100 % is reachable exactly.
//
// Outvoted is set when other outputs were claimed and the leading output
// alone meets Min and MinOperators with a strict majority of T, whatever
// OnConflict says: the builders in Disagreed were outvoted by an agreeing
// quorum. With other outputs and no such majority, the subject simply does
// not reproduce and nobody is singled out. (Under "refuse" a subject can be
// a Conflict and still have Outvoted set: the path is refused, and the
// dissenter still stands out in reports.)
//
// Agreed lists the votes for the leading output, Disagreed every other
// counted vote (output by output in the order above, then by builder name),
// Silent the counted builders without a claim, Compromised the builders of
// rule 3 (both by name). Each vote carries an RFC 6962 inclusion proof of its claim
// in the builder's latest verified checkpoint (Decide fetches them from the
// Source).
//
// # Worked example
//
// A policy of four builders, each of weight 1, T = 4:
//
//	alice  operator org-a
//	bob    operator org-b
//	carol  operator org-b
//	dave   operator org-d
//	[quorum] min = 3, min-operators = 2, on-conflict = "majority"
//
// For /nix/store/…-hello, alice, bob and carol logged output X, dave logged
// Y, and 100 logs that are not in the policy all logged Y. The unlisted logs
// count for nothing. X has weight 3 >= 3 and operators {org-a, org-b}, 2 >= 2;
// Y exists, but on-conflict is majority and 2*3 > 4: Trusted(X), with dave in
// Disagreed and the reason
//
//	3 of 4 builders agree (need 3), from 2 operators (need 2); 1 disagrees with 1 other output, but the leading output holds a strict majority (3 of 4 votes)
//
// With on-conflict = "refuse" the same claims give Conflict. Had carol been
// silent, X would have weight 2 < 3: Conflict ("only 2 of 4 builders agree
// (need 3)…"). Had bob and carol both been run by org-a with dave silent, X
// would have weight 3 but one operator: Insufficient. Had dave's log been
// caught forking, dave would be in Compromised and Y would not exist: Trusted
// even under "refuse".
package verdict
