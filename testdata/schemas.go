package testdata

import "strings"

var districtDomain = "[" + strings.Join(districtNames(), ", ") + "]"

var residentsSchema = `# Registered residents of the generated demo city (civil affairs).
name: residents
title: Registered residents
provider: civil-affairs
unit: person
max_rows_per_unit: 1
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: resident_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: name, type: VARCHAR, level: 3, kind: name, mask: name}
  - {name: id_number, type: VARCHAR, level: 3, kind: id_number, mask: "keep:6,4"}
  - {name: sex, type: VARCHAR, level: 1, kind: none, domain: [F, M]}
  - {name: birth_year, type: INTEGER, level: 2, kind: none, bounds: [1940, 2005]}
  - {name: district, type: VARCHAR, level: 1, kind: none, domain: ` + districtDomain + `}
  - {name: religion, type: VARCHAR, level: 4, kind: none, mask: suppress}
  - {name: phone, type: VARCHAR, level: 3, kind: phone, mask: "keep:3,4"}
`

var socialInsuranceSchema = `# Social-insurance contributions per resident and year (human resources).
name: social_insurance
title: Social insurance contributions
provider: human-resources
unit: person
max_rows_per_unit: 6
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: resident_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: year, type: INTEGER, level: 1, kind: none, bounds: [2019, 2024], domain: ["2019", "2020", "2021", "2022", "2023", "2024"]}
  - {name: employer_id, type: BIGINT, level: 2, kind: none, mask: hmac}
  - {name: monthly_wage, type: DOUBLE, level: 2, kind: none, bounds: [0, 100000], mask: "band:1000"}
  - {name: months_paid, type: INTEGER, level: 2, kind: none, bounds: [0, 12]}
  - {name: pension_contribution, type: DOUBLE, level: 3, kind: none, bounds: [0, 10000]}
`

var medicalVisitsSchema = `# Outpatient visits (health commission).
name: medical_visits
title: Medical visits
provider: health-commission
unit: person
max_rows_per_unit: 5
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: resident_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: visit_date, type: DATE, level: 2, kind: none, mask: month}
  - {name: hospital, type: VARCHAR, level: 1, kind: none}
  - {name: diagnosis_group, type: VARCHAR, level: 3, kind: none}
  - {name: cost, type: DOUBLE, level: 2, kind: none, bounds: [0, 50000]}
`

var enterprisesSchema = `# Registered enterprises (market regulation). The privacy unit is the enterprise.
name: enterprises
title: Enterprise registry
provider: market-regulation
unit: enterprise
max_rows_per_unit: 1
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: enterprise_id, type: BIGINT, level: 2, kind: none, privacy_unit: true, mask: hmac}
  - {name: name, type: VARCHAR, level: 2, kind: name, mask: "keep:2,0"}
  - {name: industry, type: VARCHAR, level: 1, kind: none}
  - {name: district, type: VARCHAR, level: 1, kind: none, domain: ` + districtDomain + `}
  - {name: employees, type: INTEGER, level: 1, kind: none, bounds: [0, 500]}
  - {name: registered_capital, type: DOUBLE, level: 2, kind: none, bounds: [0, 20000000]}
`

var benchSchema = `# Benchmark events: many rows per person, spread over groups.
name: bench_events
title: Benchmark events
provider: bench
unit: person
max_rows_per_unit: MAXROWS
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: grp, type: VARCHAR, level: 1, kind: none}
  - {name: value, type: DOUBLE, level: 2, kind: none, bounds: [0, 1000]}
`
