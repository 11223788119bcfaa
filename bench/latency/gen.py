"""Writes the staffing data set of bench/latency as Parquet files, from a fixed seed:

| table | rows | columns |
|---|---:|---|
| candidates | 15,000 | id, name, phone, email, zip, city, skills, resume, available_from |
| clients | 500 | id, company, vertical, bill_rate |
| job_orders | 3,000 | id, client_id, title, skill, city, pay_rate, bill_rate |
| placements | 8,000 | id, candidate_id, job_id, start_date, pay_rate, bill_rate, recruiter |
| timesheets | 120,000 | id, placement_id, week, hours, bill_total, pay_total, approved |
| call_log | 80,000 | id, candidate_id, recruiter, called_at, duration_s, disposition |
| email_log | 60,000 | id, candidate_id, recruiter, sent_at, subject, opened |

Also `people.parquet`: 15,000 rows (id, name, city, age) for the point lookup.
"""

import argparse
import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261202
CITIES = ["Austin", "Boston", "Chicago", "Denver", "Houston", "Miami", "New York", "Phoenix",
          "Portland", "San Diego", "Seattle", "Tampa"]
SKILLS = ["java", "python", "sql", "react", "kubernetes", "aws", "forklift", "welding", "nursing",
          "accounting", "excel", "customer service", "cnc", "electrician", "sales", "rust"]
VERTICALS = ["healthcare", "finance", "logistics", "manufacturing", "retail", "technology"]
FIRST = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu", "Mo", "Ned",
         "Oz", "Pia", "Quin", "Ray", "Sue", "Tom", "Uma", "Val", "Wes", "Xia", "Yan", "Zoe"]
LAST = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore", "Lee", "Clark"]
RECRUITERS = [f"recruiter{i:02d}" for i in range(40)]
DISPOSITIONS = ["no answer", "left voicemail", "interested", "not interested", "placed elsewhere"]
TITLES = ["Developer", "Analyst", "Operator", "Nurse", "Technician", "Accountant", "Associate"]


def write(out, name, columns):
    pq.write_table(pa.table(columns), out / f"{name}.parquet")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    r = random.Random(SEED)
    start = dt.date(2025, 1, 6)

    n = 15_000
    names = [f"{r.choice(FIRST)} {r.choice(LAST)}" for _ in range(n)]
    skills = [", ".join(r.sample(SKILLS, r.randint(1, 4))) for _ in range(n)]
    write(args.out, "candidates", {
        "id": pa.array(range(1, n + 1), pa.int64()),
        "name": names,
        "phone": [f"555-{r.randint(100, 999)}-{r.randint(1000, 9999)}" for _ in range(n)],
        "email": [f"{nm.lower().replace(' ', '.')}{i}@example.com" for i, nm in enumerate(names)],
        "zip": [f"{r.randint(10000, 99999)}" for _ in range(n)],
        "city": [r.choice(CITIES) for _ in range(n)],
        "skills": skills,
        "resume": [f"{nm}: {r.randint(1, 25)} years of {s}. " + " ".join(
            r.choice(SKILLS) for _ in range(30)) for nm, s in zip(names, skills)],
        "available_from": pa.array([start + dt.timedelta(days=r.randint(0, 365))
                                    for _ in range(n)], pa.date32()),
    })
    write(args.out, "people", {
        "id": pa.array(range(1, n + 1), pa.int64()),
        "name": names,
        "city": [r.choice(CITIES) for _ in range(n)],
        "age": pa.array([r.randint(18, 70) for _ in range(n)], pa.int64()),
    })
    clients = 500
    write(args.out, "clients", {
        "id": pa.array(range(1, clients + 1), pa.int64()),
        "company": [f"Company {i}" for i in range(1, clients + 1)],
        "vertical": [r.choice(VERTICALS) for _ in range(clients)],
        "bill_rate": [round(r.uniform(1.3, 1.9), 2) for _ in range(clients)],
    })
    jobs = 3_000
    job_pay = [round(r.uniform(15, 90), 2) for _ in range(jobs)]
    write(args.out, "job_orders", {
        "id": pa.array(range(1, jobs + 1), pa.int64()),
        "client_id": pa.array([r.randint(1, clients) for _ in range(jobs)], pa.int64()),
        "title": [r.choice(TITLES) for _ in range(jobs)],
        "skill": [r.choice(SKILLS) for _ in range(jobs)],
        "city": [r.choice(CITIES) for _ in range(jobs)],
        "pay_rate": job_pay,
        "bill_rate": [round(p * r.uniform(1.3, 1.8), 2) for p in job_pay],
    })
    places = 8_000
    place_job = [r.randint(1, jobs) for _ in range(places)]
    place_pay = [job_pay[j - 1] for j in place_job]
    place_bill = [round(p * r.uniform(1.3, 1.8), 2) for p in place_pay]
    write(args.out, "placements", {
        "id": pa.array(range(1, places + 1), pa.int64()),
        "candidate_id": pa.array([r.randint(1, n) for _ in range(places)], pa.int64()),
        "job_id": pa.array(place_job, pa.int64()),
        "start_date": pa.array([start + dt.timedelta(days=r.randint(0, 300))
                                for _ in range(places)], pa.date32()),
        "pay_rate": place_pay,
        "bill_rate": place_bill,
        "recruiter": [r.choice(RECRUITERS) for _ in range(places)],
    })
    sheets = 120_000
    sheet_place = [r.randint(1, places) for _ in range(sheets)]
    hours = [round(r.uniform(8, 50), 1) for _ in range(sheets)]
    write(args.out, "timesheets", {
        "id": pa.array(range(1, sheets + 1), pa.int64()),
        "placement_id": pa.array(sheet_place, pa.int64()),
        "week": pa.array([start + dt.timedelta(weeks=r.randint(0, 51)) for _ in range(sheets)],
                         pa.date32()),
        "hours": hours,
        "bill_total": [round(h * place_bill[p - 1], 2) for h, p in zip(hours, sheet_place)],
        "pay_total": [round(h * place_pay[p - 1], 2) for h, p in zip(hours, sheet_place)],
        "approved": [r.random() < 0.93 for _ in range(sheets)],
    })
    calls = 80_000
    write(args.out, "call_log", {
        "id": pa.array(range(1, calls + 1), pa.int64()),
        "candidate_id": pa.array([r.randint(1, n) for _ in range(calls)], pa.int64()),
        "recruiter": [r.choice(RECRUITERS) for _ in range(calls)],
        "called_at": pa.array([dt.datetime(2025, 1, 1) + dt.timedelta(minutes=r.randint(0, 500000))
                               for _ in range(calls)], pa.timestamp("us")),
        "duration_s": pa.array([r.randint(0, 1800) for _ in range(calls)], pa.int64()),
        "disposition": [r.choice(DISPOSITIONS) for _ in range(calls)],
    })
    emails = 60_000
    write(args.out, "email_log", {
        "id": pa.array(range(1, emails + 1), pa.int64()),
        "candidate_id": pa.array([r.randint(1, n) for _ in range(emails)], pa.int64()),
        "recruiter": [r.choice(RECRUITERS) for _ in range(emails)],
        "sent_at": pa.array([dt.datetime(2025, 1, 1) + dt.timedelta(minutes=r.randint(0, 500000))
                             for _ in range(emails)], pa.timestamp("us")),
        "subject": [f"Opportunity: {r.choice(TITLES)} in {r.choice(CITIES)}" for _ in range(emails)],
        "opened": [r.random() < 0.4 for _ in range(emails)],
    })


if __name__ == "__main__":
    main()
