"""Subscription churn: will a customer cancel within 90 days of a monthly snapshot? (The second shipped use case.)

Shaped unlike the first use case: another key and label, a three-valued protected
attribute (``gender``), the label in the same row as the snapshot (no later
label time, no outcome files), and no history features served online.
"""
