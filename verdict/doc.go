// Package verdict decides whether an output may be trusted: it counts the
// claims that the builders a node chose have logged for one (kind, subject)
// and applies the node's quorum rule. This comment is the specification of
// that rule; the code in rules.go follows it line by line.
//
// # Inputs
//
// A Policy lists builders (Member: name, operator, weight, key id) and a
// quorum: Min (agreeing weight), MinOperators (distinct operators among the
// agreeing builders) and OnConflict ("majority" or "refuse"). Optionally it
// names groups of builders (Groups), one of which (Group) the agreeing
// builders must also meet, and exceptions for subjects known not to
// reproduce (Exceptions). NewPolicy builds one from a validated
// config.Config. Without groups and exceptions the rule below is exactly
// the rule vouch applied before they existed (the "simple [quorum]").
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
// compromised or disagree are all in T. An output meets the quorum when
// weight(output) >= Min, and operators(output) >= MinOperators, and, if
// the policy names a Group, its counted builders meet that group (see
// Groups). The outcome is
//
//   - Trusted, with the leading output's claim as Value, when the leading
//     output meets the quorum and either no other output was claimed, or
//     OnConflict is "majority" and 2*weight(leading) > T (a strict majority
//     of the configured weight);
//   - otherwise Conflict when two or more outputs were claimed;
//   - otherwise Insufficient (one output short of the quorum, or none at all).
//
// Min and MinOperators below 1 are taken as 1, so that no claim at all can
// never be "agreement"; an OnConflict other than "majority" means "refuse".
// Because the denominator is T, one answering log of N is 1/N, never 100 %,
// and because the rule compares integers (weights, and 2*w > T instead of
// w/T > 50 %), 100 % is reachable exactly.
//
// The leading output is chosen by weight alone, before any group is
// looked at: a group decides whether the leading output is trusted, never
// which output leads. So on-conflict keeps its meaning with groups:
// "refuse" refuses any subject with a second counted output, and
// "majority" trusts the leading output only if it meets the quorum, group
// included, and holds a strict majority of T. Two outputs can never both
// hold a strict majority, so majority never has two winners, whatever the
// groups say.
//
// Outvoted is set when other outputs were claimed and the leading output
// alone meets the quorum (group included) with a strict majority of T,
// whatever OnConflict says: the builders in Disagreed were outvoted by an agreeing
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
// # Groups
//
// A Group has a name, a threshold Need and Members, each a builder's name
// or another group's name; a group with MinOperators m also needs the
// builders that meet it to come from m distinct operators. Groups nest
// into a tree whose leaves are builders, in the spirit of C2SP
// tlog-policy's group lines ("any" is a Need of 1, "all" of every member).
//
// The set S of builders counted for an output (rules 1 to 4: one per key)
// meets a group when there is an assignment of builders to the places
// where they are listed in which every builder of S is used at most once
// in the whole tree, and under which, for every group needed: at least
// Need of its members are met (a builder member is met by being assigned
// there; a group member recursively), and the builders assigned below it
// come from at least MinOperators distinct operators. A key counts once
// across the whole tree: a builder listed in two groups, or one key listed
// under two names in two groups, helps meet only one of them. The
// alternatives of an "any" group do not consume each other's builders,
// since only the alternative that is met uses any.
//
// Weights do not enter groups: a member is met or not. MinOperators of the
// quorum still counts every agreeing builder; a group's MinOperators only
// the builders it was met with.
//
// When no builder is listed twice and no group counts operators, counting
// members met bottom-up is exact and is all DecideEntries does. Otherwise
// it first counts that way (an upper bound: if it fails, nothing can meet
// the group) and then searches for an assignment, backtracking, with a
// budget of 65536 steps. A tree the search cannot decide within it is not
// met (fail closed) and the reason says so; NewPolicy refuses a policy
// whose groups cannot be met, or decided, even with every builder agreeing.
// Names that are not counted builders (unlisted, or weight below 1) are
// never met; a policy with groups counts at most 64 builders.
//
// # Exceptions
//
// An Exception matches one exact Subject, or (kind nix only) every store
// path whose name, the part after "/nix/store/<hash>-", matches the
// path.Match glob Name. It has a Reason and optionally a Rule: the name
// of a group or builder. It is looked at only when the rule above does not
// trust the subject; the first exception that matches is used, and then:
//
//   - an output passes the exception when its counted builders meet Rule
//     (as a group, each builder once) or, with no Rule, when it meets the
//     quorum (Min, MinOperators and the policy's group), disagreement
//     notwithstanding;
//   - if exactly one output passes, the verdict becomes Trusted with that
//     output as Value (not necessarily the leading one), its votes as
//     Agreed, every other vote as Disagreed, and Exception records the
//     match, the rule and the reason, which the reason also quotes;
//   - if none or several pass, the verdict stays as it was, and the reason
//     says why the exception did not apply. An exception never chooses
//     between two outputs its rule accepts.
//
// Compromised and equivocating builders count for nothing here either, and
// Outvoted keeps its meaning (it is about the quorum, not the exception).
// Without a matching exception, nothing changes: the default stays refusal.
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
//
// # Worked example with groups
//
// Five builders of weight 1, T = 5: our CI builders ci1 and ci2 (operator
// ours), and community rebuilders r1 (org-1), r2 and r3 (both org-2):
//
//	group ci        = 2 of {ci1, ci2}
//	group community = 2 of {r1, r2, r3}, min-operators 2
//	group release   = all of {ci, community}
//	[quorum] group = "release", min = 1, min-operators = 1, on-conflict = "majority"
//	exception name "hello-doc-*", rule ci1, reason "embeds the build date"
//
// ci1, ci2, r1 and r2 logged X for …-hello, r3 logged Y. X leads with
// weight 4; ci is met by ci1 and ci2, community by r1 and r2 (org-1, org-2);
// so release is met, and 2*4 > 5: Trusted(X), Outvoted, r3 in Disagreed.
// Had r1 logged Y and r3 X, community would have r2 and r3, two members
// but one operator: not met, so Conflict although X holds 4 of 5, with the
// reason
//
//	4 of 5 builders agree (need 1), from 2 operators (need 1); group release not met: needs 2 of 2, 1 met [community 2 of 3 need 2 from 1 of 2 operators]; 1 disagrees with 1 other output, but the leading output holds a strict majority (4 of 5 votes)
//
// (the majority alone does not trust: the quorum, group included, must be
// met as well).
//
// Had community been 2 of {ci2, r1, r2} instead, ci2 could not meet both
// ci and community: with r2 silent, ci1, ci2 and r1 would not meet
// release, although each group alone would be met.
//
// For …-hello-doc-1.0, ci1 logged A, ci2 B, r1 C: no output meets the
// quorum, Conflict; the exception matches, exactly one output (A) has ci1
// among its builders: Trusted(A), with Exception {name hello-doc-*, rule
// ci1, "embeds the build date"}, and B and C in Disagreed.
package verdict
